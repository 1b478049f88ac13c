-- A contract may name the flight its fee pays for, so a board over a range of event time
-- charges the share of the fee that falls inside it (creatorpulse/board.py). NULL: no
-- flight known, the fee is charged in full. Whole seconds are enough for a flight.
ALTER TABLE {database}.campaign_contracts
    ADD COLUMN IF NOT EXISTS flight_start Nullable(DateTime('UTC'));
ALTER TABLE {database}.campaign_contracts
    ADD COLUMN IF NOT EXISTS flight_end Nullable(DateTime('UTC'));
