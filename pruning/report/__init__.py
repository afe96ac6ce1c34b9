"""What a job publishes: JSON/CSV files, the CLI table, the plots."""
