"""The web console in the State's design system (DSFR), French first."""
