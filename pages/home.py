"""Home: what the lab does, where it runs, and the shipped models, grouped by family with a link to
each family's page and every headline score shown against its scale."""
import math

import streamlit as st

import genlib
from genlib.comparison import Evaluator, cached_references
from genlib.scoring import metric_title
from genlib.demo import demo_mode
from pages._ui import demo_caption, device_label, require_router, visible_checkpoints

require_router()

HEADLINE = (("class_accuracy", "{:.1%}"), ("bits_per_dim", "{:.3f}"), ("binarized_nats", "{:.1f}"))  # beside the FD
FLOOR, CEILING = "real test digits", "uniform noise"


@st.cache_data(show_spinner=False)
def fd_scale() -> dict[str, float]:
    """The Fréchet distance of the reference sets (shipped beside the evaluator): the scale to read a
    model's score against. Empty when they are not stored."""
    try:
        cards = cached_references(Evaluator.load(), seed=0) or []
    except genlib.CheckpointError:
        return {}
    return {card.name: card.metrics["frechet_distance"] for card in cards if "frechet_distance" in card.metrics}


def show_fd(fd: float, scale: dict[str, float]) -> None:
    """The score as a bar on the log scale from uniform noise (empty) to real test digits (full)."""
    st.metric(metric_title("frechet_distance"), f"{fd:,.1f}")
    if FLOOR in scale and CEILING in scale:
        lo, hi = math.log(scale[FLOOR]), math.log(scale[CEILING])
        share = min(1.0, max(0.0, (hi - math.log(max(fd, 1e-9))) / (hi - lo)))
        st.progress(share, text=f"scale: real digits {scale[FLOOR]:,.0f} … noise {scale[CEILING]:,.0f}")


st.title("Generative Model Lab")
st.markdown(
    "Train, sample and take apart small generative models, all offline. "
    "Every model family has its own page (autoencoders, GANs, diffusion, photo restoration, transformers): draw "
    "samples, reconstruct and interpolate digits, explore the latent space, watch a diffusion model turn noise "
    "into digits step by step, denoise your own photos, write text with a GPT and look inside its attention, "
    "or train a new model in the background and watch it learn. Digit models are scored "
    "with the same Fréchet distance, measured in the features of the lab's own digit classifier."
)
st.caption(f"Running on **{device_label()}**. Pick a page in the sidebar.")
if demo_mode():
    st.info("This is the hosted demo: your uploads stay in your browser session, and the runs you train are "
            "yours alone, in a private folder that no other visitor can list or open.", icon=":material/public:")
    demo_caption("train_steps", "train_seconds", "jobs_total", "jobs_per_session", "upload_bytes", "upload_pixels",
                 "samples", "tokens", "torch_threads", "hub", "session_quota_bytes", "session_ttl_s")

checkpoints = visible_checkpoints(include_evaluators=True)
shipped = [c for c in checkpoints if c.origin == "shipped" and c.kind == "generative"]
evaluators = [c for c in checkpoints if c.kind == "evaluator"]

if not shipped:
    st.info("No shipped checkpoints were found. Train one on a family's page (Train tab) or with "
            "`python -m genlib train vae --out checkpoints/vae-mnist`.")
else:
    scale = fd_scale()
    st.caption("Fréchet distance ↓ is measured in the digit classifier's features: the bar runs from uniform noise "
               f"({scale.get(CEILING, float('nan')):,.0f}, empty) to real held-out test digits "
               f"({scale.get(FLOOR, float('nan')):,.0f}, full). **Compare** puts any of them side by side.")
    families = genlib.all_families()
    groups: dict[str, list] = {}
    for name, cls in families.items():  # registry order
        groups.setdefault(cls.group or name, []).extend(info for info in shipped if info.family == name)
    for group, infos in groups.items():
        if not infos:
            continue
        page = families[infos[0].family].page
        head, link = st.columns([4, 1], vertical_alignment="bottom")
        head.subheader(group)
        if page:
            link.page_link(page, label=f"Open {group} →")
        columns = st.columns(4)
        for i, info in enumerate(infos):
            cls = families[info.family]
            with columns[i % 4], st.container(border=True):
                st.markdown(f"**{info.name}**  \n`{info.family}` · {cls.description}")
                if info.preview:
                    st.image(str(info.preview), caption="samples", output_format="PNG")
                elif info.preview_text:  # a text model's samples.txt: its first sample
                    first = info.preview_text.split("--- sample 2 ---")[0].removeprefix("--- sample 1 ---\n")
                    st.code(first.strip()[:400], language=None, wrap_lines=True)
                fd = info.metrics.get("frechet_distance")
                if isinstance(fd, (int, float)):
                    show_fd(fd, scale)
                    others = [f"{metric_title(k, info.metrics.get('likelihood'))} **{fmt.format(info.metrics[k])}**"
                              for k, fmt in HEADLINE if isinstance(info.metrics.get(k), (int, float))]
                    if others:
                        st.caption(" · ".join(others))
                elif own := {k: v for k, v in info.metrics.items() if k.startswith("psnr")
                             and isinstance(v, (int, float))}:  # a restorer's held-out PSNR, in dB
                    st.caption("held-out " + " · ".join(f"{k.removeprefix('psnr_').replace('_', ' ')} "
                                                        f"**{v:.2f} dB**" for k, v in own.items()))
                elif isinstance(info.metrics.get("bits_per_char"), (int, float)):  # a text model, held out
                    st.caption(f"held-out **{info.metrics['bits_per_char']:.3f} bits per character** · "
                               f"perplexity {info.metrics.get('perplexity', float('nan')):.2f}")
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
