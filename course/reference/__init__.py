"""Reference implementations in the exercises' own signatures: the fallbacks of the chapters' check cells.

A check cell falls back to the ``detector`` package's function when its signature matches the exercise;
when it does not, the fallback lives here, one module per chapter (``course/reference/ch06.py`` …), so that a
learner's notebook imports the answer's behaviour without ever holding its code.
"""
