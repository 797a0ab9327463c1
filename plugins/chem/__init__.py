"""Chemistry shared by the built-in ``structure_match`` / ``relation_match`` scorers and the ``chem_names``
text encoder: names in descriptions parsed to structures (:mod:`.chemnames`) and the relations descriptions
state to named molecules (:mod:`.chemrelations`). Not a plugin itself (it registers nothing); like every
built-in plugin it imports only :mod:`zoo.api`."""
