-- Each tenant's admission queue at its latest snapshot: leads waiting for a call slot, and
-- calls admitted.
SELECT DISTINCT ON (t.slug) t.slug AS tenant, a.waiting, a.admitted
FROM analytics.admission_snapshots a
JOIN analytics.tenants t USING (tenant_id)
WHERE true [[AND t.slug = {{tenant}}]]
ORDER BY t.slug, a.taken_at DESC
