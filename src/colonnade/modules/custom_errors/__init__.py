"""Custom errors: IIS ``httpErrors``: custom, detailed (local only) and terse error pages."""
