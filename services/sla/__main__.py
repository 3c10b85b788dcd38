from services.sla.main import run

run()
