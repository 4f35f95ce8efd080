"""Built-in modules, one folder each; ``standard.py`` lists them."""
