"""Home: what the lab does, where it runs, and the shipped checkpoints of every family."""
import streamlit as st

import genlib
from pages._ui import device_label, require_router

require_router()

HEADLINE = (  # (metrics.json key, label, format); Fréchet distance first: the one every model has
    ("frechet_distance", "Fréchet distance ↓", "{:.2f}"),
    ("class_accuracy", "class accuracy ↑", "{:.1%}"),
    ("bits_per_dim", "bits/dim ↓", "{:.3f}"),
)

st.title("Generative Model Lab")
st.markdown(
    "Train, sample and take apart small generative models of handwritten digits, all offline. "
    "Every model family has its own page (autoencoders, GANs, diffusion): draw samples, reconstruct and "
    "interpolate digits, explore the latent space, watch a diffusion model turn noise into digits step by "
    "step, or train a new model in the background and watch it learn. Models are scored "
    "with the same Fréchet distance, measured in the features of the lab's own digit classifier."
)
st.caption(f"Running on **{device_label()}**. Pick a page in the sidebar.")

checkpoints = genlib.list_checkpoints(include_evaluators=True)
shipped = [c for c in checkpoints if c.origin == "shipped" and c.kind != "evaluator"]
evaluators = [c for c in checkpoints if c.kind == "evaluator"]

if not shipped:
    st.info("No shipped checkpoints were found. Train one on a family's page (Train tab) or with "
            "`python -m genlib train vae --out checkpoints/vae-mnist`.")

# One card per shipped checkpoint, grouped by family in registry order, four to a row.
if shipped:
    st.subheader("Shipped models")
families = genlib.families()
cards = [(families[f], info) for f in families for info in shipped if info.family == f]
columns = st.columns(4)
for i, (cls, info) in enumerate(cards):
    with columns[i % 4], st.container(border=True):
        st.markdown(f"**{info.name}**  \n`{info.family}` · {cls.description}")
        if info.preview:
            st.image(str(info.preview), caption="samples", output_format="PNG")
        shown = [(label, fmt.format(info.metrics[k])) for k, label, fmt in HEADLINE
                 if isinstance(info.metrics.get(k), (int, float))]
        if shown:
            st.metric(*shown[0])
            if shown[1:]:
                st.caption(" · ".join(f"{label} **{value}**" for label, value in shown[1:]))
        else:
            st.caption("no metrics yet")
        steps, secs = info.metrics.get("train_steps"), info.metrics.get("train_seconds")
        if steps:
            st.caption(f"trained {steps:,} steps" + (f" in {secs:.0f} s" if secs else ""))

if evaluators:
    st.subheader("Evaluator")
    for info in evaluators:
        acc = info.metrics.get("test_accuracy")
        acc_text = f"{acc:.1%} test accuracy" if isinstance(acc, (int, float)) else "accuracy unknown"
        st.markdown(f"**{info.name}**: the digit classifier whose features measure Fréchet distance and "
                    f"whose predictions score conditional models; {acc_text} on the 1,000 test digits.")
else:
    st.warning("The digit classifier (checkpoints/digit-classifier) is missing, so models cannot be scored. "
               "Train it with `python -m genlib train-evaluator --out checkpoints/digit-classifier`.")
