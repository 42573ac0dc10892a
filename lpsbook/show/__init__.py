"""What a reader sees: tables, figures (plotly), filter plots, the aligned-filter explorer and the book's
chapter helpers. Imports from core, training, methods, protocols and findings."""
