"""Measures of translations: FID/KID, LPIPS, and the evaluation of exported models."""
