//! A local emulator of the Microsoft Graph v1.0 SharePoint list endpoints
