"""URL authorization: IIS ``security/authorization`` allow and deny rules by user, role and verb."""
