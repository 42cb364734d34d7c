"""One module per action; src/app.py registers them."""
