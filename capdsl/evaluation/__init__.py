"""Evaluation: the checked AST lowered into one evaluation tree, the practice-month rules every
engine shares, the reference interpreter, exact amounts and statements."""
