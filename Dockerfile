# Generative Model Lab as one container: a Hugging Face Space (Docker SDK) or any Docker host.
#
#   docker build -t genlib-lab .
#   docker run --rm -p 7860:7860 genlib-lab        # then open http://localhost:7860
#
# CPU only: torch is the +cpu build from PyTorch's own index (the Linux torch on PyPI is the
# multi-GB CUDA build). The app runs in demo mode (GENLIB_DEMO=1: capped training, uploads and
# threads; genlib/demo.py) as user 1000, listening on $PORT (7860, the Space's app_port).
# Build arguments (a Space's variables are passed as build arguments too):
#   BASE         the base image: any Debian-like image with python3 >= 3.11 and its venv module
#                (python:3.11-slim has it in /usr/local/bin, Debian's python3-venv in /usr/bin).
#   TORCH_INDEX  where torch==2.13.0+cpu comes from. Empty: only PyPI and the wheels in ./wheels/
#                (optional, git-ignored), which is how scripts/smoke_container.sh builds offline.
# The legacy builder and BuildKit both build it (no BuildKit-only syntax).
ARG BASE=python:3.11-slim

# ---- build stage: the virtual environment, with no pip cache and no wheel left behind -------------
# Also left out: the libraries' own test suites (~150 MB) and torch's C++ headers (~60 MB, only for
# compiling extensions; the image has no compiler).
FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0+cpu
# PATH spelled out: a base made by `docker import` has no ENV PATH to extend.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# wheel[s] matches the wheels/ folder when it exists and nothing when it does not.
COPY requirements.txt wheel[s] /tmp/build/
RUN python3 -m venv /opt/venv \
 && pip install --find-links /tmp/build ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} "$TORCH_SPEC" \
 && pip install --find-links /tmp/build -r /tmp/build/requirements.txt \
 && python -c "import torch, sys; sys.exit(f'torch {torch.__version__} is not the CPU build' if torch.version.cuda else 0)" \
 && if pip list --format=freeze | grep -iE '^(nvidia|cuda|triton)'; then echo 'CUDA packages were installed' >&2; exit 1; fi \
 && cd /opt/venv/lib/python3*/site-packages \
 && for pkg in pandas numpy scipy sklearn skimage sympy networkx matplotlib mpl_toolkits pyarrow pywt; do \
      [ ! -d "$pkg" ] || find "$pkg" -depth -type d -name tests -exec rm -rf {} +; done \
 && rm -rf torch/include \
 && rm -rf /tmp/build /root/.cache

# ---- runtime stage -----------------------------------------------------------------------------------
FROM ${BASE}
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    VIRTUAL_ENV=/opt/venv \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/user \
    GENLIB_DEMO=1
# Spaces sets no PORT: it connects to app_port (7860). Elsewhere, `docker run -e PORT=8501 ...`.
ENV PORT=7860
# Streamlit settings, each overridable with `docker run -e`: no file watcher (nothing is edited in
# the container), no usage statistics, and no XSRF cookie, which the Space's cross-site iframe
# blocks, so uploads would fail with 403 (https://huggingface.co/docs/hub/spaces-cookie-limitations).
ENV STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=false

# Spaces runs the container as UID 1000. The code stays root-owned (read-only to the app); only
# runs/ (training runs, score cache, visitors' folders) and $HOME (caches) are writable.
RUN useradd --create-home --uid 1000 --shell /bin/sh user \
 && mkdir -p /home/user/app/runs \
 && chown user:user /home/user/app/runs
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/user/app
COPY streamlit_app.py requirements.txt ./
COPY .streamlit .streamlit
COPY genlib genlib
COPY pages pages
COPY checkpoints checkpoints
USER user

EXPOSE 7860
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('PORT', '7860'), timeout=4)"]
CMD ["sh", "-c", "exec streamlit run streamlit_app.py --server.port=\"${PORT:-7860}\""]
