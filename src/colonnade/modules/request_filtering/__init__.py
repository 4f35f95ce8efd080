"""Request filtering: IIS ``requestFiltering`` rules applied at BEGIN_REQUEST."""
