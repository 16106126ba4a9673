"""Generative Model Lab: the entry point. It only routes.

Page config, the shared sidebar (device, global seed) and the list of pages. Adding a model
family's page is one more ``st.Page`` line in its section below.
"""
import streamlit as st

from pages._ui import demo_caption, device_label, start_session

st.set_page_config(page_title="Generative Model Lab", page_icon=":material/science:", layout="wide")
start_session()  # the torch thread cap; in the hosted demo (GENLIB_DEMO=1) this visitor's private folder

# Grouped, and expanded: a flat list of more than ten pages hides the rest (Compare among them)
# behind "View more".
page = st.navigation({
    "Lab": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
    ],
    "Image models": [
        st.Page("pages/autoencoders.py", title="Autoencoders", icon=":material/compress:"),
        st.Page("pages/gans.py", title="GANs", icon=":material/swords:"),
        st.Page("pages/diffusion.py", title="Diffusion", icon=":material/blur_on:"),
        st.Page("pages/flows.py", title="Normalizing flows", icon=":material/swap_vert:"),
        st.Page("pages/autoregressive.py", title="PixelCNN & PixelRNN", icon=":material/grid_on:"),
        st.Page("pages/boltzmann.py", title="Boltzmann machines", icon=":material/bolt:"),
    ],
    "Your photos": [
        st.Page("pages/restore.py", title="Restore photos", icon=":material/auto_fix_high:"),
    ],
    "Transformers": [
        st.Page("pages/text.py", title="Text generation", icon=":material/edit_note:"),
        st.Page("pages/attention.py", title="Attention explorer", icon=":material/visibility:"),
        st.Page("pages/attention_scratch.py", title="Attention from scratch", icon=":material/functions:"),
        st.Page("pages/finetune.py", title="Fine-tune an encoder", icon=":material/tune:"),
        st.Page("pages/vit.py", title="Vision Transformer", icon=":material/grid_view:"),
    ],
}, expanded=True)

with st.sidebar:
    st.markdown(f"**Device:** {device_label()}")
    st.number_input("Global seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="global_seed",
                    help="Seeds sampling, noise and training on every page: the same seed gives the same images.")
    demo_caption("torch_threads", "hub")

page.run()
