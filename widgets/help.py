"""What every control means, in one place: tooltips on the controls and a short caption row.

>>> explain(W.IntSlider(), "layer").tooltip.startswith("Which hidden state")   # doctest: +SKIP

Where the tooltip shows (ipywidgets 8.1): a Button's, FileUpload's or ToggleButton's own
``<button>`` carries ``title``; each ToggleButtons option's ``<button>`` carries its entry of
``tooltips``; sliders and IntText/FloatText put it on their description ``<label>``; Dropdown,
Select, Text, Textarea and Combobox put it on the ``<select>``/``<input>``/``<textarea>`` only
when they have *no* description, and with one they drop it altogether
(jupyter-widgets/ipywidgets#3964). The described ones are made with the :class:`Dropdown`,
:class:`Text`, ... of this module: the same widgets, whose description reaches the page as
``<span title="tooltip">description</span>``, so the label a person hovers has the help.
"""

from __future__ import annotations

import html

import ipywidgets as W
from traitlets import Bool, Unicode, observe

HELP = {
    "dataset": "Which labelled texts to probe: built-in sentiment or true/false statements, or "
               "your own (upload a CSV with 'text' and 'label' columns).",
    "read_at": "Read position: which token's hidden state stands for a text. 'last' = the "
               "final token (it has seen the whole text), 'mean' = the average over all tokens, "
               "'word' = the last occurrence of a word that every text contains.",
    "word": "The word to read at. It must occur in every text; the list offers words that do.",
    "layer": "Which hidden state to look at: 0 is the token embeddings, each next number the "
             "output of one more transformer block.",
    "control": "The control curve is the same probe trained on shuffled labels: what a probe "
               "scores by memorising noise. Only the gap above it is evidence.",
    "direction": "A concept direction: one vector in the model's hidden space, e.g. 'positive "
                 "minus negative'. Build one here, or use a probe from Probe curves.",
    "inner": "Inner product: how lengths and angles are measured. euclidean = plain dot "
             "product (dominated by a few huge dimensions); standardized = every dimension "
             "scaled to unit variance; causal = the geometry of the output layer (Park et al.), "
             "where unrelated concepts come out orthogonal.",
    "build_from": "How to build a new direction: 'mean difference' of two labelled sets, a "
                  "'probe' trained on them, or the difference of word pairs in the unembedding.",
    "text": "Any text: each token is coloured by how far its hidden state points along the "
            "direction.",
    "compare": "A labelled set whose texts are projected on the direction (the histogram).",
    "method": "How 2-D coordinates are made. PCA: the two directions of largest spread. UMAP: a "
              "non-linear map that keeps neighbours together (can invent shapes). circle probe: "
              "a linear map trained to put items on a circle, shown on held-out examples.",
    "cycle": "Items that come in a cyclic order (days, months, hours), or your own, "
             "comma-separated.",
    "mode": "add: push the hidden state along the direction by alpha. ablate: remove the "
            "direction's component entirely.",
    "alpha": "Steering strength: 1 means one typical hidden-state length at this layer; "
             "negative alpha pushes the other way.",
    "alpha_box": "Type an alpha here (e.g. 0.5 or -0.25); values outside the slider's range "
                 "are clipped to it, and a note says so.",
    "tokens": "How many new tokens to generate.",
    "temperature": "0 = always the most likely next token; higher = more random sampling.",
    "seed": "Random seed for sampling (a whole number); baseline and steered text share it.",
    "prompt": "The text the model continues, once without and once with steering.",
    "name": "Name for the new direction (empty: a name is made up).",
    "pairs": "Word pairs, one per line or comma-separated as 'from:to', e.g. 'king:queen, "
             "man:woman'. Each word must be a single token.",
    "lens_prompt": "A text for the model to read. Each of its tokens is a column of the grid: "
                   "what every layer would predict as the next token.",
    "lens": "How a layer's hidden state is turned into a next-token guess. logit: the model's "
            "own final norm and output layer applied to it (nostalgebraist 2020); tuned and "
            "jacobian first map it with a per-layer matrix fitted for this model.",
    "shade": "What a cell's colour shows: the top token's probability, how far the layer's "
             "guess is from the model's final answer (KL), how unsure it is (entropy), or "
             "the probability of your target token.",
    "target": "One token whose probability and rank are shown at every layer, e.g. ' Paris' "
              "(a leading space is part of a word token). Several tokens are refused with "
              "their pieces.",
    "lens_tokens": "How many tokens to let the model write after the prompt.",
    "fit": "Train the selected lens for this model once (minutes; it is cached on disk); "
           "press again to cancel, which saves nothing.",
    "generate": "Let the model continue the prompt; each new token adds a grid column as it "
                "arrives.",
    "lens_direction": "A registered direction, shown in words: the tokens it makes more and "
                      "less likely through this lens at its layer.",
}

CAPTIONS = {
    "probe": "A probe is a linear read-out trained to predict the label from one layer's hidden "
             "states; its held-out accuracy per layer is the blue curve, the grey curve is the "
             "same probe on shuffled labels (the control).",
    "projection": "The projection of a hidden state on a direction is its inner product with "
                  "the direction: how much of the concept it carries. Blue = along the "
                  "direction, vermillion = against it.",
    "circular": "Does the model place cyclic items on a circle? The right plot tests it per "
                "layer against shuffled orders; the left one shows a layer in 2-D.",
    "steering": "Steering adds alpha x the direction to every token's hidden state at one "
                "layer while the model writes. Underlined bold tokens differ from the baseline "
                "(same prompt, same seed).",
    "lens": "A lens reads each layer's hidden state as if it were the last: which token would "
            "the model say next from there? Columns are the prompt's tokens, rows the layers; "
            "the black bar shows where a column's answer becomes the model's final one.",
}


#: What each option of a toggle means (the toggle's own help text stays on its label).
OPTION_HELP = {
    "euclidean": "plain dot product: dominated by a few huge outlier dimensions",
    "standardized": "every dimension scaled to unit variance first, so no dimension dominates",
    "causal": "the output layer's geometry (Park et al.): unrelated concepts come out "
              "orthogonal",
    "whitened": "standardized and decorrelated (the hidden states' covariance made the "
                "identity)",
    "last": "the final token's hidden state (it has seen the whole text)",
    "mean": "the average hidden state over all tokens",
    "word": "the hidden state at the last occurrence of a word every text contains",
    "PCA": "the two directions of largest spread (linear, fast)",
    "UMAP": "a non-linear map that keeps neighbours together (can invent shapes)",
    "circle probe": "a linear map trained to put items on a circle, shown on held-out examples",
    "add": "push the hidden state along the direction by alpha",
    "ablate": "remove the direction's component from the hidden state",
    "logit": "the model's final norm and output layer applied to the layer's stream",
    "tuned": "a per-layer affine map trained to match the final distribution (Belrose et al.)",
    "jacobian": "the stream mapped by the average Jacobian of the final layer (Gurnee et al.)",
    "probability": "the top token's probability (blue = sure)",
    "KL to final": "KL divergence from the model's final distribution, nats (vermillion = far)",
    "entropy": "entropy of the layer's guess, nats (vermillion = unsure)",
    "target": "the probability of the target token you typed (blue = likely)",
}


def explain(control: W.Widget, key: str) -> W.Widget:
    """Set ``control``'s tooltip to the help text ``HELP[key]`` (a toggle's options get their
    own line each); returns the control."""
    control.tooltip = HELP[key]
    if isinstance(control, W.ToggleButtons):
        control.tooltips = [f"{label}: {OPTION_HELP[label]}" if label in OPTION_HELP
                            else HELP[key] for label in control._options_labels]
    return control


def _titled_description(description: str, widget: W.Widget) -> str:
    """The description as the page gets it: HTML whose text carries the tooltip as a title."""
    text = html.escape(description or "")
    tip = getattr(widget, "tooltip", None)
    return f'<span title="{html.escape(tip, quote=True)}">{text}</span>' if text and tip \
        else text


def _titled(cls):
    """``cls`` whose tooltip reaches the page as the title of its description label."""

    class Titled(cls):
        description = Unicode(
            "", help="Description of the control (plain text; shown with the tooltip as its "
                     "title)").tag(sync=True, to_json=_titled_description)
        description_allow_html = Bool(True, help="the page gets the description as escaped "
                                                 "HTML").tag(sync=True)

        @observe("tooltip")
        def _resend_description(self, change) -> None:
            if self.description and getattr(self, "comm", None) is not None:
                self.send_state("description")

    Titled.__name__ = Titled.__qualname__ = cls.__name__
    Titled.__module__ = __name__
    Titled.__doc__ = (f"``ipywidgets.{cls.__name__}`` whose tooltip shows on its description "
                      "label (ipywidgets 8 drops it when there is a description).")
    return Titled


Dropdown = _titled(W.Dropdown)
Select = _titled(W.Select)
Text = _titled(W.Text)
Textarea = _titled(W.Textarea)
Combobox = _titled(W.Combobox)


def caption(key: str) -> W.HTML:
    """A one-paragraph explanation shown above a view's controls."""
    return W.HTML(f"<div style='color:#444;font-size:92%;max-width:980px'>"
                  f"{html.escape(CAPTIONS[key])}</div>")
