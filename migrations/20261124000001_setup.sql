-- Shared helpers used by every later migration.

-- Keeps `updated_at` true on every UPDATE of a table that opts in with a trigger.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Installs the `updated_at` trigger on one table: SELECT manage_updated_at('clients');
CREATE OR REPLACE FUNCTION manage_updated_at(_table regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TRIGGER set_updated_at BEFORE UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION set_updated_at()',
        _table
    );
END;
$$;
