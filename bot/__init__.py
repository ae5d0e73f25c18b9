"""青城诉求 — citizen grievance assistant for Hohhot."""
