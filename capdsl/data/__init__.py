"""Member panels: reading, typing and checking the input files, parameters, the panel memo, and
conversion from Synthea exports."""
