"""Layout measured in the browser, from DOM boxes: text that is clipped by a container, text that
overlaps other text, controls without a tooltip. Used on the live notebook and on exported HTML.

Each check is a JavaScript function for ``page.evaluate``; it returns a list of faults (strings
a person can act on), empty when the layout is clean.
"""

from __future__ import annotations

# Shared helpers: visible boxes, the containers that clip them, readable names for faults.
_COMMON = r"""
const TOL = 1.5;  // px: anti-aliasing and rounding
const box = (e) => e.getBoundingClientRect();
const shown = (e) => {
  const r = box(e);
  if (r.width < 1 || r.height < 1) return false;
  for (let a = e; a && a.nodeType === 1; a = a.parentElement) {
    const s = getComputedStyle(a);
    if (s.display === 'none' || s.visibility === 'hidden' || parseFloat(s.opacity) === 0)
      return false;
  }
  return true;
};
const name = (e) => {
  const t = (e.textContent || e.value || e.placeholder || '').trim().replace(/\s+/g, ' ');
  const cls = (e.getAttribute('class') || e.tagName).split(' ')[0];
  return `${cls} "${t.slice(0, 50)}"`;
};
const where = (e) => {
  const v = e.closest('.reprlab-view, .jp-OutputArea-output, body');
  const tab = document.querySelector('.widget-tab .lm-TabBar-tab.lm-mod-current');
  return tab && v && v.closest('.widget-tab') ? `[${tab.textContent.trim()}] ` : '';
};
// The part of the page that can show ``e``: its box cut by every ancestor that clips
// (overflow other than visible), and by the window's width. Text outside it is cut off or needs
// a sideways scroll. Vertically only clipping inside the nearest scroll container counts:
// above it, "outside" just means scrolled out of sight.
const clipFor = (e) => {
  let l = 0, t = -1e9, r = document.documentElement.clientWidth, b = 1e9, scrolls = false;
  for (let a = e.parentElement; a && a !== document.documentElement; a = a.parentElement) {
    if (a.tagName === 'svg' || a.tagName === 'g') continue;  // the figure's own SVG: below
    const s = getComputedStyle(a);
    const rb = box(a);
    if (s.overflowX !== 'visible') { l = Math.max(l, rb.left); r = Math.min(r, rb.right); }
    if (!scrolls && (s.overflowY === 'hidden' || s.overflowY === 'clip')) {
      t = Math.max(t, rb.top); b = Math.min(b, rb.bottom);
    }
    if (s.overflowY === 'auto' || s.overflowY === 'scroll') scrolls = true;
  }
  return {l, t, r, b};
};
const outside = (r, c) => r.left < c.l - TOL || r.right > c.r + TOL ||
                          r.top < c.t - TOL || r.bottom > c.b + TOL;
const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > TOL &&
                          Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > TOL;
"""

# Every visible plotly figure under ``root``: each text (title, caption, ticks, axis titles,
# legend entries, annotations, point labels) lies inside the figure and inside every container
# that clips it, and no two texts of a figure overlap.
FIGURE_FAULTS = "(rootSelector) => {" + _COMMON + r"""
  const faults = [];
  const root = rootSelector ? document.querySelector(rootSelector) : document;
  const figures = [...(root || document).querySelectorAll('.js-plotly-plot')]
    .filter((gd) => gd.offsetParent !== null && gd._fullLayout);
  for (const gd of figures) {
    const title = (gd.querySelector('.gtitle') || {}).textContent || 'untitled figure';
    const label = `${where(gd)}figure "${title.slice(0, 40)}"`;
    const fig = box(gd.querySelector('.main-svg') || gd);
    const clip = clipFor(gd);
    const texts = [...gd.querySelectorAll('.main-svg text')]
      .filter((t) => !t.closest('.hoverlayer, .modebar') && t.textContent.trim() && shown(t));
    const boxes = texts.map(box);
    texts.forEach((t, i) => {
      const r = boxes[i];
      if (outside(r, {l: fig.left, t: fig.top, r: fig.right, b: fig.bottom}))
        faults.push(`${label}: ${name(t)} sticks out of the figure ` +
                    `(${Math.round(r.left - fig.left)}..${Math.round(r.right - fig.left)} of ` +
                    `${Math.round(fig.width)} px wide, ${Math.round(r.top - fig.top)}..` +
                    `${Math.round(r.bottom - fig.top)} of ${Math.round(fig.height)} high)`);
      else if (outside(r, clip))
        faults.push(`${label}: ${name(t)} is cut by its container`);
      for (let j = 0; j < i; j++)
        if (overlap(r, boxes[j]) && !texts[j].contains(t) && !t.contains(texts[j]))
          faults.push(`${label}: ${name(t)} overlaps ${name(texts[j])}`);
    });
  }
  return faults;
}"""

# Every visible control and text block under ``root`` (a notebook output, the Explorer): its
# label is not cut (ellipsis, scrolled, a select or placeholder wider than its box), it lies
# inside every clipping container, and no two controls overlap.
CONTROL_FAULTS = "(rootSelector) => {" + _COMMON + r"""
  const faults = [];
  const root = (rootSelector && document.querySelector(rootSelector)) || document;
  const canvas = document.createElement('canvas').getContext('2d');
  const textWidth = (text, e) => {
    const s = getComputedStyle(e);
    canvas.font = `${s.fontStyle} ${s.fontWeight} ${s.fontSize} ${s.fontFamily}`;
    return canvas.measureText(text).width;
  };
  const padding = (e) => {
    const s = getComputedStyle(e);
    return parseFloat(s.paddingLeft) + parseFloat(s.paddingRight) +
           parseFloat(s.borderLeftWidth) + parseFloat(s.borderRightWidth);
  };
  const controls = [...root.querySelectorAll(`.jupyter-widgets button, .jupyter-widgets select,
      .jupyter-widgets input, .jupyter-widgets textarea, .jupyter-widgets .widget-label,
      .jupyter-widgets .widget-readout, .widget-tab .lm-TabBar-tab`)]
    .filter((e) => shown(e) && !e.closest('.js-plotly-plot') && e.type !== 'file');
  const boxes = controls.map(box);
  controls.forEach((e, i) => {
    const r = boxes[i], label = `${where(e)}${name(e)}`;
    let cut = false;
    if (e.tagName === 'SELECT') {
      const option = e.options[e.selectedIndex];
      cut = option && textWidth(option.text, e) > e.clientWidth - padding(e) - 14;
    } else if ((e.tagName === 'INPUT' || e.tagName === 'TEXTAREA') && !e.value) {
      cut = e.placeholder && textWidth(e.placeholder, e) > e.clientWidth - padding(e);
    } else if (e.tagName !== 'INPUT' && e.tagName !== 'TEXTAREA') {
      cut = e.scrollWidth > e.clientWidth + 1 ||
            [...e.querySelectorAll('*')].some((c) => c.scrollWidth > c.clientWidth + 1 &&
                                                     getComputedStyle(c).overflow !== 'visible');
    }
    if (cut) faults.push(`${label}: its text is cut (${Math.round(r.width)} px wide)`);
    if (outside(r, clipFor(e))) faults.push(`${label}: cut by its container`);
    for (let j = 0; j < i; j++)
      if (overlap(r, boxes[j]) && !controls[j].contains(e) && !e.contains(controls[j]))
        faults.push(`${label} overlaps ${name(controls[j])}`);
  });
  // text blocks (captions, status lines, tables, token strips) wider than their box
  for (const e of root.querySelectorAll(`.jupyter-widgets.widget-html, .widget-html-content,
      .reprlab-view, .reprlab-view .widget-box, .reprlab-plot, .reprlab-tokens`)) {
    if (shown(e) && e.scrollWidth > e.clientWidth + 1)
      faults.push(`${where(e)}${name(e)}: content ${e.scrollWidth} px wide in a ` +
                  `${e.clientWidth} px box`);
  }
  // a token or number in a table cell broken over two lines (an inline box with two rects)
  for (const e of root.querySelectorAll('.reprlab-view td code')) {
    if (shown(e) && e.getClientRects().length > 1)
      faults.push(`${where(e)}table cell ${name(e)} breaks over lines`);
  }
  return faults;
}"""

# Every visible interactive control under ``root`` carries a tooltip a mouse can find: the
# element itself or an ancestor inside the same widget has a non-empty title, or its description
# label does (ipywidgets 8 puts it there for described dropdowns, text boxes and sliders).
MISSING_TOOLTIPS = "(rootSelector) => {" + _COMMON + r"""
  const root = (rootSelector && document.querySelector(rootSelector)) || document;
  return [...root.querySelectorAll(`.jupyter-widgets button, .jupyter-widgets select,
      .jupyter-widgets input, .jupyter-widgets textarea, .jupyter-widgets .noUi-handle`)]
    .filter((e) => shown(e) && !e.closest('.js-plotly-plot') && e.type !== 'file')
    .filter((e) => {
      const widget = e.closest('.jupyter-widgets:not(.widget-container)') || e;
      const titled = e.closest('[title]');
      const label = widget.querySelector('.widget-label[title], .widget-label [title]');
      return !((titled && titled.getAttribute('title').trim() &&
                (widget.contains(titled) || titled === widget)) ||
               (label && label.getAttribute('title').trim()));
    })
    .map((e) => `${where(e)}${name(e)} has no tooltip`);
}"""

# Every plotly figure of a page lies inside the page's width (an exported HTML file).
FIGURES_OUTSIDE_PAGE = r"""() => {
  const width = document.documentElement.clientWidth;
  return [...document.querySelectorAll('.js-plotly-plot')].map((gd) => {
    const r = gd.getBoundingClientRect();
    const title = (gd.querySelector('.gtitle') || {}).textContent || 'untitled';
    return r.left < -1 || r.right > width + 1 || r.width < 100 ?
      `figure "${title.slice(0, 40)}" spans ${Math.round(r.left)}..${Math.round(r.right)} ` +
      `of a ${width} px page` : null;
  }).filter(Boolean);
}"""
