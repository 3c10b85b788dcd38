"""The park's department directory (../shared/product.md): the codes every service agrees on."""

from dataclasses import dataclass
from enum import StrEnum


class Side(StrEnum):
    TIANJIN = "tianjin"
    PARK = "park"
    ZHONGGUANCUN = "zhongguancun"


@dataclass(frozen=True, slots=True)
class Department:
    code: str
    side: Side
    name_en: str
    name_zh: str
    handles: str

    def name(self, language: str) -> str:
        return self.name_zh if language == "zh" else self.name_en


_DIRECTORY = (
    Department(
        "tj-approval",
        Side.TIANJIN,
        "Binhai New Area Administrative Approval Bureau",
        "滨海新区行政审批局",
        "business licences, permits, project filing, construction approval, one-window procedures",
    ),
    Department(
        "tj-market",
        Side.TIANJIN,
        "Binhai New Area Market Supervision Bureau",
        "滨海新区市场监督管理局",
        "company registration changes, registered address, trademarks, product quality, "
        "food licences",
    ),
    Department(
        "tj-tax",
        Side.TIANJIN,
        "Binhai New Area Tax Bureau",
        "滨海新区税务局",
        "tax registration, invoices, VAT refunds, tax incentives, moving tax affairs from Beijing",
    ),
    Department(
        "tj-hrss",
        Side.TIANJIN,
        "Binhai Human Resources and Social Security Bureau",
        "滨海新区人社局",
        "Tianjin social insurance, labour contracts, recruitment, talent subsidies, work permits",
    ),
    Department(
        "tj-police",
        Side.TIANJIN,
        "Binhai Public Security Bureau, household registration",
        "滨海新区公安户政",
        "hukou transfer to Tianjin, residence permits, ID cards",
    ),
    Department(
        "tj-education",
        Side.TIANJIN,
        "Binhai Education Bureau",
        "滨海新区教育体育局",
        "school and kindergarten places in Tianjin for staff's children",
    ),
    Department(
        "tj-housing",
        Side.TIANJIN,
        "Binhai Housing and Construction Commission",
        "滨海新区住建委",
        "talent apartments, housing subsidies, rentals",
    ),
    Department(
        "tj-utilities",
        Side.TIANJIN,
        "Binhai utilities coordination",
        "滨海新区水电气网协调",
        "power, water, gas, broadband connections and outages",
    ),
    Department(
        "tj-ecology",
        Side.TIANJIN,
        "Binhai Ecology and Environment Bureau",
        "滨海新区生态环境局",
        "environmental impact assessment, emission permits",
    ),
    Department(
        "tj-transport",
        Side.TIANJIN,
        "Binhai Transport Bureau",
        "滨海新区交通运输局",
        "commuter buses, Beijing–Tianjin intercity, parking, logistics permits",
    ),
    Department(
        "park-investment",
        Side.PARK,
        "Science Park Investment Promotion Bureau",
        "科技园招商局",
        "settling in, site selection, relocation from Beijing, which of the dual policies apply",
    ),
    Department(
        "park-service",
        Side.PARK,
        "Science Park Enterprise Service Center",
        "科技园企业服务中心",
        "general enquiries, daily life not covered elsewhere, triage of unplaceable tickets",
    ),
    Department(
        "park-property",
        Side.PARK,
        "Science Park Property and Facilities",
        "科技园物业",
        "offices, maintenance, security, canteens, dormitories",
    ),
    Department(
        "park-innovation",
        Side.PARK,
        "Science Park Innovation and Incubation Office",
        "科技园创新孵化办",
        "pilot production, samples into products, shared labs and equipment, incubators, "
        "tech finance",
    ),
    Department(
        "zgc-admin",
        Side.ZHONGGUANCUN,
        "Zhongguancun Science Park Administrative Committee",
        "中关村管委会",
        "Zhongguancun policies and subsidies, high-tech enterprise certification",
    ),
    Department(
        "zgc-ip",
        Side.ZHONGGUANCUN,
        "Zhongguancun IP and Technology Transfer Center",
        "中关村知识产权与技术转移中心",
        "patents, technology contracts, transformation of research results",
    ),
    Department(
        "bj-education",
        Side.ZHONGGUANCUN,
        "Beijing Municipal Education Commission, student registration",
        "北京市教委学籍",
        "keeping children's Beijing student registration, exam eligibility in Beijing",
    ),
    Department(
        "bj-hrss",
        Side.ZHONGGUANCUN,
        "Beijing Human Resources and Social Security Bureau",
        "北京市人社局",
        "keeping Beijing social insurance, Beijing hukou and talent settlement, pensions",
    ),
    Department(
        "park-supervision",
        Side.PARK,
        "Science Park Supervision Office",
        "科技园督查办",
        "receives SLA escalations; never a routing target for a new ticket",
    ),
)

DEPARTMENTS: dict[str, Department] = {department.code: department for department in _DIRECTORY}

TRIAGE = "park-service"
"""Where a ticket nobody can place goes."""

SUPERVISION = "park-supervision"
"""Receives SLA escalations; never the target of routing or a transfer."""


def department(code: str) -> Department:
    try:
        return DEPARTMENTS[code]
    except KeyError:
        raise ValueError(f"unknown department code {code!r}") from None
