"""HTTP redirection: IIS ``httpRedirect`` (wildcard rules and a whole-subtree redirect)."""
