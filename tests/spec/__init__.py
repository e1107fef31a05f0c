"""Tests named after the specification's sections: one file per section
(test_<section>.py), functions named test_<section>__<requirement>; CONFORMANCE.md
maps each section to them."""
