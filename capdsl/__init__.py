"""capdsl: capitation contracts as code.

    import capdsl
    contract = capdsl.load("contract.cap")
    statements = contract.evaluate("2011-03", members="members.csv")

The names below are the public Python API (`capdsl.api`, docs/api.md). The pipeline runs
source → parse tree → AST → checked AST → evaluation tree → backends (docs/architecture.md).
"""

__version__ = "0.1.0"

_API = ("load", "check", "evaluate", "Contract", "Statements")
_ERRORS = ("CapError", "CheckError", "SyntaxError_", "InputError", "EvalError", "BackendError", "UsageError",
           "Diagnostic")
__all__ = [*_API, *_ERRORS, "__version__"]


def __getattr__(name: str):
    # The API is imported on first use, so that `import capdsl` (and the CLI, which imports the
    # package for its version) loads nothing else.
    if name in _API:
        from capdsl import api

        return getattr(api, name)
    if name in _ERRORS:
        from capdsl import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'capdsl' has no attribute {name!r}")
