"""Thermal policy: states, prediction, pressure and admission, as pure functions of history."""
