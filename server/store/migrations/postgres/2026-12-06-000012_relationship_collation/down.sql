ALTER TABLE relationships
    ALTER COLUMN first_coll TYPE TEXT COLLATE "default",
    ALTER COLUMN first_id TYPE TEXT COLLATE "default",
    ALTER COLUMN second_coll TYPE TEXT COLLATE "default",
    ALTER COLUMN second_id TYPE TEXT COLLATE "default";
