-- The name a user shows people who pay them by card number (the recipient preview). NULL: the
-- default, first name and the initial of the last name.
ALTER TABLE users ADD COLUMN display_name TEXT
    CONSTRAINT users_display_name_length CHECK (display_name IS NULL OR char_length(display_name) BETWEEN 1 AND 50);
