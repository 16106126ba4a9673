"""The diffusion page's parts (pages/diffusion.py is the page itself): ``views`` holds the small
pieces its tabs share (inputs, progress, caches, figures) and ``lab`` its deeper tabs (steps against
quality, attention, editing). Drawing only."""
