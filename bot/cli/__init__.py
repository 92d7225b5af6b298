"""The command line: `python -m bot [run|caption|find|check|download-models]`."""
