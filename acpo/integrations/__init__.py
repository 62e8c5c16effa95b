"""Step credit inside the trainers users already scale with: ``acpo.integrations.trl`` (TRL's ``GRPOTrainer``),
``acpo.integrations.verl`` (a verl advantage estimator).

Each integration imports its engine lazily: ``import acpo`` never needs TRL or verl.
"""
