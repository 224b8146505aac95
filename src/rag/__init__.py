"""Document-chat assistant for Oberon's research on onderwijs and jeugdhulp."""

__version__ = "0.1.0"
