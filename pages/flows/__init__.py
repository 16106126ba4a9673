"""The normalizing-flows page's parts (pages/flows.py is the page itself): ``cnf`` holds its 2-D
continuous-flow tab, trained live on the background runner. Drawing only."""
