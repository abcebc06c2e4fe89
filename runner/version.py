"""The version of runner, in a leaf module: the CLI, reports and SARIF output name it without importing the
public API's facade (``runner/__init__.py``), which sits on top of the house."""

__version__ = "0.1.0"
