"""Training of both SceneDINO stages (feature field, unsupervised semantic head)."""
