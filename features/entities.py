"""The two things the payments demo describes: who pays and who gets paid."""
from featurelake.definitions import Entity

customer = Entity("customer", join_keys=["customer_id"], owner="risk-team",
                  description="A paying customer of the wallet, identified by its account id")
merchant = Entity("merchant", join_keys=["merchant_id"], owner="risk-team",
                  description="A merchant that accepts payments, identified by its acquirer id")
