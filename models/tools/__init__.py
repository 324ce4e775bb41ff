"""Tools that make what the run time loads: training, export, quantisation, templates, detector files and measurements."""
