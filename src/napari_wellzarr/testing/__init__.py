"""Test helpers users can import: synthetic plates and Hypothesis strategies."""
