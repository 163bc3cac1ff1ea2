"""E-mail providers: the port, Amazon SES, Resend and a sandbox that speaks Resend's API."""
