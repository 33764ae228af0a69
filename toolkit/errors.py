"""User-facing errors: one line, naming the file / line / field at fault."""


class ToolkitError(Exception):
    """An error caused by the user's input (a file, a config, a bundle), shown as one line without a traceback."""


class ConfigError(ToolkitError):
    """A config file or override with an unknown key or a value of the wrong type."""


class BundleError(ToolkitError):
    """A model bundle that is missing files, is corrupted, or does not match this toolkit."""
