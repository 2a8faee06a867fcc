//! SharePoint Online target connector over Microsoft Graph
