-- Target connections may use a native plugin's target connector instead of SharePoint.
ALTER TABLE sharepoint_connections ADD COLUMN connector TEXT NOT NULL DEFAULT 'sharepoint';
ALTER TABLE sharepoint_connections ADD COLUMN options JSONB;
