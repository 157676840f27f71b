"""User interfaces over ``core``: layout and wiring only, no maths."""
