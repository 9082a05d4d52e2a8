print("tailgate")
