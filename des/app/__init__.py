"""The application layer: the command line, scenario and sweep loading, reports and plots."""
