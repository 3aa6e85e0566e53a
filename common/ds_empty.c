/* Gives every module library at least one object, so a module folder may start empty. */
typedef int ds_empty_translation_unit;
