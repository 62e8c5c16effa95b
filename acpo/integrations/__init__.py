"""Step credit inside the trainers users already scale with (verl; TRL)."""
