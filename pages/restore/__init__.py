"""The Restore page's parts (pages/restore.py is the page itself): ``views`` holds the before/after
slider, the synchronised zoom, the difference map and the metrics chart. Drawing only."""
