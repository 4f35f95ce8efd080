"""IP and domain restrictions: IIS ``ipSecurity`` allow/deny entries at BEGIN_REQUEST."""
