"""Building blocks of the `report` stage: HTML assembly, plots, the shortcut audit and the DVC experiments view."""
