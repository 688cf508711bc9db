"""Results records and what is made of them: Markdown / HTML / CSV tables, per-layer inspection."""
