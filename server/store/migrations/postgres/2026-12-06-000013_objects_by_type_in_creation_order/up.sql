-- Objects of one type in creation order: a page of an unfiltered walk (`query-all` paged by
-- cookie, rescoring, conditional roles re-evaluated over every user) is a range of this index
-- rather than every object of the type sorted again for each page.
CREATE INDEX objects_type_pk ON objects (otype, pk);
