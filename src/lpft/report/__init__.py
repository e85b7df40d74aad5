"""Reports built from run folders: tables (Markdown + CSV), plots, and the ``lpft compare`` study."""
